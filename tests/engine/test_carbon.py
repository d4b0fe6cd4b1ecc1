"""The shipped grid-intensity table and its lookup (pure: no Django, no network)."""
import csv
import subprocess
import sys

import pytest

from workers.engine import carbon


def test_every_row_carries_source_year_kind_and_licence():
    with carbon.TABLE_PATH.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 40 and {"WORLD", "EU"} <= {r["region"] for r in rows}
    assert len({r["region"] for r in rows}) == len(rows)
    for row in rows:
        assert row["source"] and row["source_url"].startswith("https://") and row["licence"] == "CC-BY-4.0"
        assert row["kind"] in ("average", "marginal") and 1990 <= int(row["year"]) <= 2030
        assert 0 < float(row["g_per_kwh"]) < 1500, row  # no grid is cleaner than zero or dirtier than lignite
        assert row["provenance"]


def test_lookup_gives_the_engine_options_with_provenance():
    options = carbon.lookup(" fr ")
    assert options["grid_intensity_g_per_kwh"] == 56.0
    assert options["carbon_region"] == "FR" and options["carbon_year"] == 2023
    assert options["carbon_kind"] == "average" and options["carbon_licence"] == "CC-BY-4.0"
    assert "Ember" in options["carbon_source"] and "France" in options["carbon_source"]
    assert options["carbon_source_url"].startswith("https://ourworldindata.org/")
    with pytest.raises(carbon.UnknownRegion):
        carbon.lookup("XX")


def test_regions_list_world_and_eu_first():
    codes = [code for code, _ in carbon.regions()]
    assert codes[:2] == ["WORLD", "EU"] and "DE" in codes
    assert dict(carbon.regions())["DE"].startswith("Germany (DE): 381 gCO2e/kWh, 2023")


def test_co2e_is_kwh_times_pue_times_intensity():
    assert carbon.co2e_g(3.6e6, 400.0, pue=1.5) == pytest.approx(600.0)


def test_importing_the_lookup_does_not_import_torch():
    code = "import sys, workers.engine.carbon as c; c.lookup('DE'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
