import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for the user-scorer example module


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a fresh directory so lightning_logs/ and results/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
