"""The envsync page in the Airflow UI: a FastAPI app served by the api-server (see plugins/envsync_ui.py).

data.py   what the page shows, read (never written) from BigQuery and the state bucket, cached
svg.py    the plots, rendered server-side as SVG (no JavaScript, no network at view time)
page.py   the HTML of the page
app.py    the FastAPI app: GET / (the page) and GET /data.json, behind Airflow's authentication
"""
