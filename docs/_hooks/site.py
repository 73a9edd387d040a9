"""MkDocs hooks of the documentation site (configured in mkdocs.yml).

- The REST API's OpenAPI schema is generated from the code on every build
  (``manage.py spectacular`` on the demo project), so ``api.md``'s reference
  never goes stale; the schema is published as ``openapi.yaml`` too.
- The benchmark results (``benchmarks/results/latest.md`` and its plots) are
  published under ``benchmarks/`` so ``performance.md`` can link to them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "build" / "docs" / "openapi.yaml"
RESULTS = ROOT / "benchmarks" / "results"


def on_pre_build(config: Any) -> None:
    """Write the OpenAPI schema that ``[OAD(...)]`` in api.md renders."""
    SCHEMA.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(ROOT / "testproject" / "manage.py"),
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(SCHEMA),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise PluginError(f"generating the OpenAPI schema failed:\n{result.stderr}")


def on_files(files: Files, config: Any) -> Files:
    """Add the schema and the benchmark results to the site."""
    site_dir = config["site_dir"]
    use_urls = config["use_directory_urls"]
    files.append(File("openapi.yaml", str(SCHEMA.parent), site_dir, use_urls))
    for path in [*sorted(RESULTS.glob("*.png")), RESULTS / "latest.md"]:
        if path.exists():
            src_path = str(path.relative_to(ROOT))
            files.append(
                File(
                    src_path,
                    str(ROOT),
                    site_dir,
                    use_urls,
                    inclusion=InclusionLevel.NOT_IN_NAV,
                )
            )
    return files
