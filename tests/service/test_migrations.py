"""Schema changes are Alembic revisions; an old database upgrades with its data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from memtune.service.store.models import Base
from memtune.service.store.session import get_engine, migrate, normalize_url


def test_database_at_the_first_revision_upgrades_and_keeps_its_studies(database_url):
    migrate(database_url, "0001_studies_trials_metrics")
    engine = get_engine(normalize_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO memtune_studies (name, task, spec, status, cancel_requested, total_trials, attempt, created_at) "
                "VALUES ('old', 'digits_mlp', '{}', 'completed', false, 4, 1, CURRENT_TIMESTAMP)"
            )
        )
    migrate(database_url)
    with engine.connect() as connection:
        owner = connection.execute(
            text(
                "SELECT o.name FROM memtune_studies s JOIN memtune_owners o ON o.id = s.owner_id WHERE s.name = 'old'"
            )
        ).scalar()
    assert owner == "local"


def test_models_and_migrations_describe_the_same_schema(database_url):
    migrate(database_url)
    with get_engine(normalize_url(database_url)).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": "memtune_alembic_version"}
        )
        differences = compare_metadata(context, Base.metadata)
    assert [d for d in differences if "memtune_alembic_version" not in str(d)] == []


V1_SPEC = (
    '{"name": "old", "task": "digits_mlp", "arms": [{"optimizer": "sgd", "baseline": true}, '
    '{"optimizer": "am_sgd"}], "seeds": [0, 1, 2], "metric": "val_accuracy", "mode": "max"}'
)
V1_VERDICT = (
    '{"study": "old", "task": "digits_mlp", "metric": "val_accuracy", "mode": "max", '
    '"target": null, "arms": [{"arm": "sgd", "optimizer": "sgd", "baseline": true, '
    '"best_config": {"lr": 0.1}, "search_trials": 1, "search_diverged": 0, '
    '"seed_values": {"0": 0.9}, "mean": 0.9, "ci_low": null, "ci_high": null, '
    '"seeds_diverged": 0, "time_to_target_s": null, "target_hit_rate": null, '
    '"mean_step_time_s": 0.001, "mean_epoch_time_s": 1.0, "state_bytes": 4.0, '
    '"peak_memory_mb": 300.0, "passes_per_step": 1, "mean_beta": null}], '
    '"comparisons": [{"arm": "am_sgd", "baseline": "sgd", "pairs": 3, "mean_difference": '
    '"-inf", "ci_low": null, "ci_high": null, "wilcoxon_p": 0.25, "outcome": "undetermined"}]}'
)


def test_every_endpoint_answers_for_a_study_stored_before_schema_two(database_url):
    """A database written by memtune before held-out splits (revision 0002, v1 spec and
    verdict, a diverged trial with a NaN epoch) upgrades, and the API serves all of it."""
    from fastapi.testclient import TestClient

    from memtune.service.api.app import create_app
    from memtune.service.config import Settings
    from memtune.service.store.session import Database

    migrate(database_url, "0002_owners_and_api_keys")
    engine = get_engine(normalize_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO memtune_owners (name, created_at) VALUES ('local', CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO memtune_studies (owner_id, name, task, spec, status, cancel_requested,"
                " total_trials, attempt, created_at, verdict) VALUES (1, 'old', 'digits_mlp',"
                " :spec, 'completed', false, 8, 1, CURRENT_TIMESTAMP, :verdict)"
            ),
            {"spec": V1_SPEC, "verdict": V1_VERDICT},
        )
        connection.execute(
            text(
                "INSERT INTO memtune_arms (study_id, position, label, optimizer, baseline) VALUES"
                " (1, 0, 'sgd', 'sgd', true), (1, 1, 'am_sgd', 'am_sgd', false)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO memtune_trials (study_id, arm, tune_trial_id, phase, seed, config,"
                " state, attempt, epochs_done, best_metric, final_metric, summary, created_at,"
                " updated_at) VALUES (1, 'am_sgd', 't1', 'seed', 0, '{\"lr\": 9.0}', 'diverged',"
                " 1, 1, NULL, NULL, NULL, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                'INSERT INTO memtune_metrics (trial_id, epoch, attempt, "values", created_at)'
                " VALUES (1, 1, 1, :values, CURRENT_TIMESTAMP)"
            ),
            {"values": '{"epoch": 1, "train_loss": {"$float": "nan"}, "diverged": true}'},
        )
    client = TestClient(create_app(Settings(database_url=database_url), Database(database_url)))
    study = client.get("/studies/1").json()
    assert study["spec_schema_version"] == 1 and study["warnings"] == []
    assert client.get("/studies").json()["count"] == 1
    trials = client.get("/studies/1/trials").json()
    assert trials["count"] == 1 and trials["data"][0]["phase"] == "seed"
    trial = client.get("/trials/1").json()
    assert trial["history"][0]["values"]["train_loss"] == "nan" and trial["traceback"] is None
    verdict = client.get("/studies/1/verdict").json()
    assert verdict["schema_version"] == 1 and verdict["comparisons"][0]["difference"] == "-inf"
    assert "undetermined" in verdict["comparisons"][0]["reason"]
    for format in ("json", "csv"):
        assert client.get("/studies/1/export", params={"format": format}).status_code == 200


def test_memtune_migrate_upgrades_and_the_services_can_leave_it_to_that_job(tmp_path):
    import os
    import subprocess
    import sys

    from sqlalchemy import inspect

    from memtune.service.api.app import create_app
    from memtune.service.config import Settings
    from memtune.service.store.session import get_engine, normalize_url

    untouched = f"sqlite:///{tmp_path / 'untouched.db'}"
    create_app(Settings(database_url=untouched, migrate_on_start=False))
    assert "memtune_studies" not in inspect(get_engine(normalize_url(untouched))).get_table_names()
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "memtune", "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "at revision 0008_node_losses" in done.stderr  # the newest revision
    assert "memtune_studies" in inspect(get_engine(normalize_url(url))).get_table_names()
