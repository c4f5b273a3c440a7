"""A rule set's fingerprint: which exact rules, citations, value sets and card texts.

Shown in the gallery (what the committee approved) and checked by every dry-run worker (all
shards evaluated with the same knowledge).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def ruleset_fingerprint(rules_dir: Path, cards_dir: Path) -> str:
    """SHA-256 over the file names and bytes of the rules folder and the card templates."""
    digest = hashlib.sha256()
    for base in (rules_dir, cards_dir):
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(base)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()
