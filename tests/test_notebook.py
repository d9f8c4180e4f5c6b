"""notebooks/explore.ipynb runs headless from the repository root, draws its plots, and is committed clean."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def _captures_present() -> bool:
    """The notebook reads the corpus, or else any capture under captures/ or tests/data/."""
    return any(p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)
               for root in (REPO / "captures", REPO / "tests" / "data") if root.is_dir() for p in root.rglob("*"))


def _read():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_without_outputs():
    notebook = _read()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)


def test_notebook_uses_the_public_api_only():
    notebook = _read()
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "tlsflow.analyze(" in source
    for private in ("tlsflow.pipeline", "tlsflow.tcp", "tlsflow.capture", "tlsparse", "analyzers"):
        assert private not in source


@pytest.mark.slow
def test_notebook_executes_and_draws(monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    from nbclient import NotebookClient

    if not _captures_present():
        pytest.skip("no capture under captures/ or tests/data/ for the notebook to explore")
    monkeypatch.delenv("TLSFLOW_CAPTURES", raising=False)
    notebook = _read()
    # Raises CellExecutionError (with the cell and the traceback) if any cell fails.
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 1
    first = next(out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
                 if out.get("output_type") == "stream")
    assert "connections in" in first["text"]  # the load cell found and analysed captures
