"""The first models trained on the simulator calibrated against a real pool
(infra/local/markets/polygon-busy-pool.yaml): sane on ordinary traffic."""

from __future__ import annotations

import pytest
import yaml

from dexwatch.app.workflows.bootstrap import bootstrap_hourly_model
from tests._detectors import EARLIER_DESIGN_REQUEST
from tests.conftest import ROOT, make_settings

# Mining the 40 simulated hours of the hourly bootstrap: about 290 s on this kind of machine,
# over 600 s on loaded cores.
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(1500)]

CALIBRATED = ROOT / "infra" / "local" / "markets" / "polygon-busy-pool.yaml"


def test_the_first_hourly_model_answers_the_earlier_designs_ordinary_hour_normal(tmp_path):
    simulator = yaml.safe_load(CALIBRATED.read_text())["simulator"]
    settings = make_settings(tmp_path / "state", simulator=simulator)
    detector, hours = bootstrap_hourly_model(settings, settings.model.hourly_bootstrap_hours)
    assert detector.training_rows >= 50
    # An ordinary hour: 1 M USD of volume on 5 M USD of TVL, volume up 10 % and TVL down 5 %
    # on the day. The levels are not the simulated pools' (their liquidity is in 18-decimal
    # raw units): the model judges the hour by its changes.
    scores = detector.score(EARLIER_DESIGN_REQUEST["instances"])
    assert not scores.is_anomaly[0], scores.top_features[0]
    # The same hour with its volume ten times the day before's and forty deviations above
    # the day's mean is not.
    spike = list(EARLIER_DESIGN_REQUEST["instances"][0])
    spike[0], spike[4], spike[10] = 1e7, 10.0, 40.0
    assert detector.score([spike]).is_anomaly[0]
