"""Study reports: read a study directory, say in words what it found, and render the notebook.

`build_report(study_dir)` executes the parameterised template reports/study_report.ipynb with
papermill and writes study_dir/report/report.ipynb, a code-free report.html and one PNG per figure
under study_dir/report/figures/. The notebook stays thin: it reads the study with
`study_data.load_study`, writes tables and sentences with `report_words`, draws with `plots`, and
uses the cell helpers here (`FigureSink`, `note`, `folded`), so all of them can be used (and
tested) outside the notebook.

The template lives in the top-level reports/ folder, found next to the installed package (the
project is installed editable from the repository root). A wheel install has no reports/ folder:
pass `template=` then.

Only results.csv is required; every other file of the study directory may be missing, and the
notebook shows a "not available" note in its place.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pae_lab.fsutil import atomic_write
from pae_lab.plan.layout import StudyLayout, figure
from pae_lab.results.plots import save_figure
from pae_lab.results.report_inputs import ReportError, find_template
from pae_lab.results.study_data import load_study

KERNEL_NAME = "python3"


@dataclass(frozen=True)
class ReportPaths:
    ipynb: Path
    html: Path
    figures: list[Path]



def folded(title: str, html: str) -> None:
    """A section the reader unfolds on demand (configuration, protocols)."""
    from IPython.display import HTML, display

    display(HTML(f"<details><summary><b>{title}</b></summary>{html}</details>"))



# ----------------------------------------------------------------------------- notebook helpers
class FigureSink:
    """Saves each report figure as a PNG under one folder and shows that PNG inline.

    Showing the saved file (rather than the live figure) guarantees the HTML report and the PNGs
    on disk are the same pictures.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.paths: list[Path] = []

    def __call__(self, fig: Any, name: str) -> None:
        from IPython.display import Image, display

        path = save_figure(fig, self.folder / figure(name))
        self.paths.append(path)
        display(Image(filename=str(path)))


def note(text: str) -> None:
    """An italic remark in the report, e.g. for a missing input."""
    from IPython.display import Markdown, display

    display(Markdown(f"*{text}*"))


def missing(what: str) -> None:
    note(f"Not available: {what} is missing or empty in the study directory.")


# ----------------------------------------------------------------------------- building
def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Make sure the Jupyter kernel `name` exists and runs this interpreter.

    ipykernel's wheel installs a `python3` spec into the environment, and jupyter_client falls back
    to ipykernel's built-in spec when none is installed; its argv "python" is replaced with
    sys.executable at launch. A spec of the same name earlier on the Jupyter path (e.g. a user-level
    one pointing at another Python) would shadow ours: we refuse it with a fix rather than run the
    report in a Python that has no pae-lab.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=name, prefix=sys.prefix)
        spec = KernelSpecManager().get_kernel_spec(name)
    launcher = spec.argv[0] if spec.argv else ""
    python_aliases = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if launcher not in python_aliases and Path(launcher).resolve() != Path(sys.executable).resolve():
        raise ReportError(f"Jupyter kernel {name!r} at {spec.resource_dir} runs {launcher}, not this Python "
                          f"({sys.executable}); remove that kernelspec or run "
                          f"`{sys.executable} -m ipykernel install --sys-prefix`")


def build_report(
    study_dir: Path | str,
    *,
    kind: str | None = None,
    log_artifact: Callable[[Path], None] | None = None,
    timeout: int = 600,
    template: Path | str | None = None,
    confidence: float = 0.95,
) -> ReportPaths:
    """Execute the report notebook over `study_dir`; write report/report.ipynb, report.html, figures/*.png.

    kind: "study" or "tune" (default: study.json's `kind`, else "study"). log_artifact: called with
    the notebook and the HTML path once both exist (e.g. MLflow's parent-run `log_artifact`).
    timeout: seconds any one cell may run. A failing cell raises ReportError with the cell's
    error; the partly executed notebook is left at report/report.ipynb for inspection.
    """
    import papermill
    from nbconvert import HTMLExporter
    from papermill.exceptions import PapermillExecutionError

    study_dir = Path(study_dir).resolve()
    study = load_study(study_dir, kind=kind)  # fail early, with a clear message, on a bad directory
    template = Path(template) if template else find_template()
    out = StudyLayout(study_dir).report
    figures_dir = out.figures
    shutil.rmtree(figures_dir, ignore_errors=True)  # stale figures of an earlier report would mislead
    figures_dir.mkdir(parents=True)
    ipynb, html = out.ipynb, out.html
    ensure_kernel()
    try:
        papermill.execute_notebook(
            str(template), str(ipynb),
            parameters={"study_dir": str(study_dir), "kind": study.kind, "figures_dir": str(figures_dir),
                        "confidence": confidence},
            kernel_name=KERNEL_NAME, cwd=str(study_dir), progress_bar=False, execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        raise ReportError(f"report cell {err.cell_index} failed: {err.ename}: {err.evalue} "
                          f"(the partly executed notebook is at {ipynb})") from err
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_filename(str(ipynb))
    atomic_write(html, lambda tmp: tmp.write_text(body, encoding="utf-8"))
    paths = ReportPaths(ipynb=ipynb, html=html, figures=out.saved_figures())
    if log_artifact is not None:
        for path in (paths.ipynb, paths.html):
            log_artifact(path)
    return paths
