from pathlib import Path

from schemas.export import MODELS, render_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_committed_json_schemas_are_up_to_date():
    for model in MODELS:
        path = DOCS / f"{model.__name__}.json"
        assert path.exists(), f"{path} missing: run `python -m schemas.export docs/schemas`"
        assert path.read_text(encoding="utf-8") == render_schema(model), (
            f"{path} is stale: run `python -m schemas.export docs/schemas` and commit the result"
        )
