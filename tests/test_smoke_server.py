import requests


def test_sandbox_serves_https_with_its_own_ca(sandbox):
    info = sandbox.info()
    r = requests.get(
        f"https://127.0.0.1:{info['port']}/_sandbox/health", verify=info["ca_bundle"], timeout=10
    )
    assert r.status_code == 200 and r.json() == {"status": "ok"}
