"""No credential leaks into what a run leaves behind: the executed notebooks, the HTML pages, the index,
report.json and the command's log hold neither the sandbox's client secret nor any access token that was
issued to the notebook kernels during the run (read back from the token cache they shared)."""

from __future__ import annotations

import json
import re
from pathlib import Path

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


def _issued_tokens(data_dir: str) -> set[str]:
    """Every access and refresh token in the msal cache the built-in sandbox profile keeps in its data dir."""
    cache = json.loads((Path(data_dir) / "tokens.json").read_text())
    return {
        entry["secret"]
        for kind in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(kind, {}).values()
    }


def test_no_secret_or_issued_token_in_any_output(notebook_run):
    secret = notebook_run.info["client_secret"]
    tokens = _issued_tokens(notebook_run.info["data_dir"])
    assert len(secret) >= 16 and tokens, "nothing to look for: the check would be blind"
    assert all(JWT.match(t) for t in tokens)  # what the kernels used: real RS256 JWTs

    outputs = {
        p.name: p.read_text() for p in notebook_run.out.iterdir() if p.suffix in (".ipynb", ".html", ".json")
    }
    assert len(outputs) == 4 * 2 + 2  # each notebook executed + HTML, index.html, report.json
    outputs["d365kit report (log)"] = notebook_run.log
    for name, text in outputs.items():
        assert secret not in text, name
        for token in tokens:
            assert token not in text and token[-40:] not in text, name
        assert not JWT.search(text), name  # nor any other token-shaped string
