"""Changes are ratios a reader can use: never a percentage like +513744%, never ×0.00."""
import os
import subprocess
import sys
from pathlib import Path

from audit.reports.formatting import lower_first, ratio


def test_ratios_keep_their_meaning_at_every_scale():
    assert ratio(0.6431, [0.611, 0.684]) == "×0.64 [0.61, 0.68]"
    assert ratio(5138.44) == "×5,138"  # what was "+513744%"
    assert ratio(0.00166) == "×0.0017"  # not ×0.00
    assert ratio(1.0) == "×1.00" and ratio(None) == "—" and ratio(float("nan")) == "—"
    assert ratio(0.97, [0.9, None]) == "×0.97"  # half an interval is no interval


def test_axis_titles_keep_acronyms():
    assert lower_first("Energy per inference") == "energy per inference"
    assert lower_first("FLOPs per sample") == "FLOPs per sample"


def test_the_selectors_do_not_import_the_template_filters():
    """The old cycle (selectors -> templatetags.units -> selectors) is gone."""
    code = ("import django; django.setup(); import sys, audit.reports.report_page, audit.reports.compare_page, "
            "audit.reports.history_page; "
            "print('audit.templatetags.units' in sys.modules)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "audit.settings"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
