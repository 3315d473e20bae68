"""Discovery of prod: row-level access policies (rowAccessPolicies.list, every page) and the dataset's
default CMEK key. https://cloud.google.com/bigquery/docs/reference/rest/v2/rowAccessPolicies/list"""

from __future__ import annotations

from unittest import mock

from google.cloud import bigquery

from envsync.bigquery.discovery import discover_dataset, list_row_access_policies


def policy(name: str) -> dict[str, object]:
    return {"rowAccessPolicyReference": {"projectId": "p", "datasetId": "sales", "tableId": "t", "policyId": name}}


def test_every_page_of_row_access_policies_is_read() -> None:
    client = mock.Mock()
    client._connection.api_request.side_effect = [
        {"rowAccessPolicies": [policy("b")], "nextPageToken": "t2"},
        {"rowAccessPolicies": [policy("a")]},
    ]
    assert list_row_access_policies(client, "envsync-demo", "sales", "orders") == ["a", "b"]
    first, second = client._connection.api_request.call_args_list
    assert first.kwargs["path"] == "/projects/envsync-demo/datasets/sales/tables/orders/rowAccessPolicies"
    assert second.kwargs["query_params"] == {"pageToken": "t2"}


def test_discovery_lists_policies_of_base_tables_only_and_reads_the_default_key() -> None:
    client = mock.Mock()
    prod = bigquery.Dataset("envsync-demo.sales")
    prod.location = "US"
    prod.default_encryption_configuration = bigquery.EncryptionConfiguration(kms_key_name="projects/k/x")
    client.get_dataset.return_value = prod
    tables = {"orders": bigquery.Table("envsync-demo.sales.orders"), "v": bigquery.Table("envsync-demo.sales.v")}
    tables["orders"]._properties["type"] = "TABLE"
    tables["v"]._properties["type"] = "VIEW"
    client.list_tables.return_value = [mock.Mock(reference=name) for name in tables]
    client.get_table.side_effect = lambda name: tables[name]
    client._connection.api_request.return_value = {"rowAccessPolicies": [policy("eu_only")]}
    info = discover_dataset(client, "envsync-demo", "sales", row_access_policies=True)
    assert {t.table: t.row_access_policies for t in info.tables} == {"orders": ["eu_only"], "v": []}
    assert client._connection.api_request.call_count == 1
    assert info.kms_key_name == "projects/k/x"
    client._connection.api_request.reset_mock()
    discover_dataset(client, "envsync-demo", "sales")  # reseed's discovery: no policy calls
    client._connection.api_request.assert_not_called()
