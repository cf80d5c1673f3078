"""The neighbours suite: its claims are registered under their fixed ids in the right suite,
and each names the theory page (which exists) that derives its prediction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maml_depth.validation import CLAIMS

IDS = ("ach-balanced-dynamics", "bernacchia-negative-rate", "gao-sener-tradeoff",
       "collins-representation", "saunshi-separation", "raghu-feature-reuse")
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("cid", IDS)
def test_registered_with_a_theory_page(cid: str) -> None:
    c = CLAIMS[cid]
    assert c.suite == "neighbours"
    pages = re.findall(r"docs/theory/(neighbours-[a-z-]+\.md)", c.reference)
    assert pages, c.reference
    for page in pages:
        text = (ROOT / "docs" / "theory" / page).read_text(encoding="utf-8")
        assert cid in text
        assert page in (ROOT / "docs" / "theory" / "index.md").read_text(encoding="utf-8")
