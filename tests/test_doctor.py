"""`doctor`: every check passes on the sandbox; a broken profile gets failing rows, each with its fix."""

from __future__ import annotations

from d365kit.config import replace
from d365kit.doctor import Doctor, entity_sets, render


def test_doctor_passes_on_the_sandbox(ws):
    findings = Doctor(ws.profile).run()
    assert all(f.ok for f in findings), render(findings)
    checks = {f.check for f in findings}
    sets = entity_sets()
    assert {"customers", "paymentTerms", "salesPrices", "crmIntegrationRecords"} <= {
        *sets["bc"],
        *sets["companion"],
    }
    assert {"accounts", "invoicedetails", "bcbi_companies"} <= set(sets["dataverse"])
    served = set(ws.bc.metadata().entity_sets)  # an option table API v2.0 lacks (shippingAgents) is not read
    assert "BC read shippingAgents" not in checks and "shippingAgents" not in served
    assert {f"BC read {n}" for n in sets["bc"] if n in served} | {
        f"BC read {n}" for n in sets["companion"]
    } <= checks
    assert {f"Dataverse read {n}" for n in sets["dataverse"]} <= checks
    assert "companion API" in checks
    assert render(findings).endswith(f"{len(findings)} checks passed, 0 failed")


def test_doctor_reports_a_wrong_secret_with_its_fix(ws, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCTOR_WRONG", "not-the-secret-at-all")
    bad = replace(
        ws.profile,
        name="broken",
        secret_env="DOCTOR_WRONG",
        sandbox_dir=None,
        token_cache=str(tmp_path / "t.json"),
    )
    findings = Doctor(bad).run()
    failed = {f.check: f for f in findings if not f.ok}
    assert {"BC token", "Dataverse token"} <= set(failed)
    assert "AADSTS7000215" in failed["BC token"].detail and "secret" in failed["BC token"].fix
    text = render(findings)
    assert "not-the-secret-at-all" not in text and "fix:" in text


def test_doctor_reports_an_unknown_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("D365KIT_CONFIG", str(tmp_path / "none.toml"))
    findings = Doctor("nope").run()
    assert len(findings) == 1 and not findings[0].ok and "unknown profile 'nope'" in findings[0].detail


def test_doctor_command(ws, capsys):
    from d365kit.cli import main

    assert main(["doctor", "--profile", "sandbox"]) == 0
    out = capsys.readouterr().out
    assert "BC read customers" in out and "checks passed, 0 failed" in out
