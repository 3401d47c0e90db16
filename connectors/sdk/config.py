"""Typed per-type configuration on top of :class:`hub.config.ConnectorInstance`.

A connector type declares a subclass of :class:`ConnectorConfig` whose extra fields are read from
the instance's ``options`` table (unknown keys are refused, so a typo is an error, not a silent
default) and whose ``allowed_auth`` lists the auth kinds it understands::

    >>> from typing import ClassVar
    >>> from hub.config import ConnectorInstance
    >>> class AcmeConfig(ConnectorConfig):
    ...     allowed_auth: ClassVar[tuple[str, ...]] = ("api_key", "none")
    ...     start_from: str = "20000101000000"
    >>> inst = ConnectorInstance(name="acme-1", type="acme", base_url="http://src",
    ...                          options={"start_from": "20210101000000"})
    >>> AcmeConfig.from_instance(inst).start_from
    '20210101000000'

Every problem is reported at once, with the instance's name, by :meth:`ConnectorConfig.from_instance`
raising :class:`hub.config.ConfigError`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.config import ConfigError, ConnectorInstance
from hub.privacy import is_personal_field

__all__ = ["ConnectorConfig"]


class ConnectorConfig(BaseModel):
    """Configuration of one connector instance: the common block plus the type's typed options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Auth kinds (``ConnectorInstance.auth.kind``) this type accepts.
    allowed_auth: ClassVar[tuple[str, ...]] = ("api_key", "basic", "oauth2", "access_key", "none")
    #: Whether ``unit_code`` must be set (one-stop systems: one instance per unit).
    requires_unit_code: ClassVar[bool] = False

    instance: ConnectorInstance
    #: Largest answer read, in bytes; a larger one is a ``too_large`` dead letter.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    #: Deepest JSON nesting accepted in a page or a record (``too_deep`` beyond).
    max_depth: Annotated[int, Field(ge=2, le=200)] = 32
    #: How many times an unparseable page is re-fetched before it is dead-lettered and the stream holds.
    bad_page_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    #: Event ids remembered per instance so look-back re-reads cost no Kafka writes.
    seen_capacity: Annotated[int, Field(ge=100)] = 200_000
    #: More source fields to keep as they are (the allow-list of :mod:`connectors.sdk.fields`
    #: plus these; dotted paths reach nested objects, e.g. ``QuaTrinhXuLy.MaCanBo``). Never personal data.
    keep_fields: tuple[str, ...] = ()
    #: More free-text fields to keep, masked (notes an operator needs); never in dead letters or pushes
    #: unless ``privacy.share_free_text``.
    free_text_fields: tuple[str, ...] = ()
    #: Refused records remembered (by a keyed hash of their content) so each is dead-lettered once.
    refused_capacity: Annotated[int, Field(ge=10, le=10_000)] = 1_000

    @field_validator("keep_fields", "free_text_fields")
    @classmethod
    def _not_personal(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            parts = path.split(".")
            if not all(p.strip() for p in parts):
                raise ValueError(f"{path!r} is not a field name or a dotted path like 'QuaTrinhXuLy.GhiChu'")
            personal = [p for p in parts if is_personal_field(p)]
            if personal:
                raise ValueError(
                    f"{path!r} names personal data ({personal[0]!r}); the hub never keeps names, phones, e-mails, "
                    "addresses or ID numbers (the applicant's ID number is kept as IdHash already)"
                )
        return value

    @model_validator(mode="after")
    def _check_instance(self) -> Self:
        kind = self.instance.auth.kind
        if kind not in self.allowed_auth:
            raise ValueError(
                f"auth kind {kind!r} is not supported by connector type {self.instance.type!r}; "
                f"use one of {', '.join(self.allowed_auth)}"
            )
        if self.requires_unit_code and not self.instance.unit_code:
            raise ValueError(f"connector type {self.instance.type!r} needs unit_code (the unit's GSO code)")
        return self

    @classmethod
    def from_instance(cls, instance: ConnectorInstance) -> Self:
        """Validate ``instance`` and its ``options``; :class:`ConfigError` lists every problem."""
        data: dict[str, Any] = {**instance.options, "instance": instance}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"connector {instance.name!r} (type {instance.type!r}): {exc.error_count()} problem(s)"]
            for err in exc.errors(include_url=False, include_input=False):
                loc = ".".join(str(p) for p in err["loc"])
                where = f"options.{loc}" if loc and not loc.startswith("instance") else (loc or "instance")
                lines.append(f"  - {where}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from None
