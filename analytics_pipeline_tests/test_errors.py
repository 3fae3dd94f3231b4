"""The project's exceptions cross process boundaries (Dagster sends a step's error from the run
worker to the daemon and the UI): every one must survive pickling with its fields, and whether a
failure is worth a retry must be its type, not a flag someone forgets to set."""

from __future__ import annotations

import datetime as dt
import inspect
import pickle

from analytics_pipeline import errors


def test_every_exception_survives_a_pickle_round_trip_with_its_fields():
    samples = {
        errors.DataQualityError: errors.DataQualityError(
            "rule broken",
            check_name="invariants",
            rule="delivered_le_sent",
            table="campaign_analytics",
            tenant="tenant-001",
            date=dt.date(2026, 3, 1),
        ),
        errors.EventContractError: errors.EventContractError("bad event", event="email_sent"),
    }
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, errors.AnalyticsPipelineError)
    ]
    assert len(classes) >= 10
    for cls in classes:
        exc = samples.get(cls) or cls(f"{cls.__name__}: what broke and what to do")
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls
        assert str(back) == str(exc)
        assert vars(back) == vars(exc), cls


def test_transient_is_a_type():
    transient = errors.TransientRollupError("lost the connection")
    permanent = errors.RollupError("no such column")
    assert isinstance(transient, errors.TransientError) and transient.transient
    assert not isinstance(permanent, errors.TransientError) and not permanent.transient
    assert isinstance(pickle.loads(pickle.dumps(transient)), errors.TransientError)
