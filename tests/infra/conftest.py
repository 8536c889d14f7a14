"""One offline synthesis of the whole CDK app, shared by every infra test module."""

from __future__ import annotations

import pytest

from tests.infra.synthesis import Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    result = synthesize(outdir)
    assert result.returncode == 0, f"synth failed:\n{result.stderr[-6000:]}"
    return Synthesized(outdir=outdir, stderr=result.stderr)
