"""Typed errors from both services' bodies; profiles and their refusal to hold secrets."""

from __future__ import annotations

import pytest

from d365kit.errors import BadRequestError, ConfigError, ConflictError, NotFoundError, ThrottledError
from d365kit.odata.errors import parse_error
from d365kit.profiles import get_profile


def test_bc_error_body_with_correlation_id():
    err = parse_error(
        409,
        {
            "error": {
                "code": "Request_EntityChanged",
                "message": "Another user has already changed the record.  CorrelationId:  0f4f3a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b.",
            }
        },
    )
    assert isinstance(err, ConflictError)
    assert (err.code, err.message, err.correlation_id) == (
        "Request_EntityChanged",
        "Another user has already changed the record.",
        "0f4f3a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    )


def test_dataverse_error_body_and_classes():
    err = parse_error(
        412,
        {"error": {"code": "0x80060882", "message": "The version of the existing record doesn't match"}},
        {"REQ_ID": "abc"},
    )
    assert isinstance(err, ConflictError) and err.correlation_id == "abc"
    assert isinstance(parse_error(404, {"error": {"code": "0x80040217", "message": "x"}}), NotFoundError)
    assert isinstance(parse_error(400, "not json"), BadRequestError)
    throttled = parse_error(
        429, {"error": {"code": "0x80072322", "message": "Number of requests exceeded"}}, {"Retry-After": "7"}
    )
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 7.0


def _write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_profile_from_file_with_environment_override(tmp_path, monkeypatch):
    path = _write(
        tmp_path,
        '[profiles.prod]\ntenant_id = "contoso.onmicrosoft.com"\nclient_id = "abc"\nsecret_env = "PROD_SECRET"\n'
        'dataverse_url = "https://contoso.crm.dynamics.com"\n',
    )
    monkeypatch.setenv("D365KIT_PROD_BC_COMPANY", "CRONUS USA, Inc.")
    monkeypatch.setenv("PROD_SECRET", "s3cr3t-value")
    prof = get_profile("prod", path)
    assert prof.bc_company == "CRONUS USA, Inc."
    assert prof.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert prof.dataverse_scope == "https://contoso.crm.dynamics.com/.default"
    assert prof.secret() == "s3cr3t-value"
    assert "s3cr3t" not in repr(prof)


def test_profile_errors_name_the_fix(tmp_path, monkeypatch):
    path = _write(tmp_path, '[profiles.prod]\ntenant_id = "t"\nclient_id = "c"\nsecret_env = "MISSING_VAR"\n')
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*prod"):
        get_profile("nope", path)
    monkeypatch.delenv("MISSING_VAR", raising=False)
    with pytest.raises(ConfigError, match=r"\$MISSING_VAR, which is not set"):
        get_profile("prod", path).secret()
    bad = _write(tmp_path, '[profiles.x]\ntenant_id = "t"\nclient_id = "c"\nclient_secret = "leak-me"\n')
    with pytest.raises(ConfigError, match="secrets never go there") as exc:
        get_profile("x", bad)
    assert "leak-me" not in str(exc.value)
    typo = _write(tmp_path, '[profiles.x]\ntenant_id = "t"\nclient_id = "c"\nauth_mode = "password"\n')
    with pytest.raises(ConfigError, match="auth_mode 'password'"):
        get_profile("x", typo)
    cert = _write(tmp_path, '[profiles.x]\ntenant_id = "t"\nclient_id = "c"\nauth_mode = "certificate"\n')
    with pytest.raises(ConfigError, match="certificate_path"):
        get_profile("x", cert)


def test_bc_blank_datetime_reads_as_missing():
    import pandas as pd

    from d365kit.frames import convert

    frame = convert(
        pd.DataFrame({"t": ["0001-01-01T00:00:00Z", "2026-11-20T11:30:00Z"]}), {"t": "Edm.DateTimeOffset"}
    )
    assert str(frame["t"].dtype) == "datetime64[ns, UTC]"
    assert pd.isna(frame["t"].iloc[0]) and frame["t"].iloc[1] == pd.Timestamp("2026-11-20T11:30:00Z")
