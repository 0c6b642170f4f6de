"""Every Python example in the README runs as written (in a fresh process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DECISIONTRACE_STORE": f"sqlite:///{tmp_path / 'runs.db'}",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }
    done = subprocess.run(
        # The examples share the README's convention: `import decisiontrace as dt`.
        [sys.executable, "-c", "import decisiontrace as dt\n" + BLOCKS[index]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"README example {index} failed:\n{BLOCKS[index]}\n{done.stderr}"
