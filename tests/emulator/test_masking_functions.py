"""The functions envsync's masks and their verification compute in BigQuery, checked against the values
BigQuery's documentation gives: a mask computed on the emulator must equal the one BigQuery computes,
or hashed values would not join with tables masked on BigQuery (and samples would pick other rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fidkit
import pytest

pytestmark = pytest.mark.integration

PROJECT = "envsync-demo"
HASH_DOC = "https://cloud.google.com/bigquery/docs/reference/standard-sql/hash_functions"
JSON_DOC = "https://cloud.google.com/bigquery/docs/reference/standard-sql/json_functions#to_json_string"
STRUCT_DOC = "https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#constructing_a_struct"


def test_farm_fingerprint_gives_the_documented_values(bq: Any) -> None:
    """HASH_DOC, FARM_FINGERPRINT example (prod samples and fake masks are built on it)."""
    rows = fidkit.run(
        bq,
        """
        with example as (
            select 1 as x, "foo" as y, true as z union all
            select 2 as x, "apple" as y, false as z union all
            select 3 as x, "" as y, true as z
        )
        select x, farm_fingerprint(concat(cast(x as string), y, cast(z as string))) as row_fingerprint
        from example order by x""",
    )
    assert [r["row_fingerprint"] for r in rows] == [-1541654101129638711, 2794438866806483259, -4880158226897771312]


def test_sha256_to_hex_gives_the_standard_digest(bq: Any) -> None:
    """HASH_DOC, SHA256 (the hash mask is to_hex(sha256(concat(salt, value)))): FIPS 180-2's 'abc' vector."""
    rows = fidkit.run(
        bq, "select to_hex(sha256('abc')) as h, to_hex(sha256(concat(@salt, cast(null as string)))) as n", salt="s"
    )
    assert rows == [{"h": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "n": None}]


def test_to_json_string_of_a_struct_of_columns(bq: Any, dataset: Callable[..., str]) -> None:
    """JSON_DOC and STRUCT_DOC: a STRUCT of columns takes their names as field names (bqfidelity/structs.py);
    the verification of masked columns matches rows on such a struct."""
    ds = dataset()
    fidkit.run(bq, f"create table `{PROJECT}.{ds}.t` as select 1 as id, [10, 20] as coordinates, 'a' as s")
    rows = fidkit.run(bq, f"select to_json_string(struct(`id`, `coordinates`)) as j from `{PROJECT}.{ds}.t`")
    assert rows == [{"j": '{"id":1,"coordinates":[10,20]}'}]
