"""The local developer stack (the emulators: devstack) and the demo prod. Never imported by the product."""
