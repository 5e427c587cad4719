"""The JSON Schema (draft 2020-12) of one message body, as ``parse_message`` accepts it.

Producers and consumers in other languages validate against these documents;
:mod:`shared.schemas.export` writes them to ``shared/schemas/json/`` and the
AsyncAPI document (:mod:`shared.schemas.asyncapi`) embeds the same schemas.
"""

from __future__ import annotations

from typing import Any, Final

from shared.schemas.envelope import Envelope
from shared.schemas.messages import message_type

JSONObject = dict[str, Any]
MessageClass = type[Envelope[Any]]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: Base of the schemas' ``$id``: an identifier, not a download location
#: (``.example`` is reserved, RFC 2606). The files live in this repository.
SCHEMA_ID_BASE: Final = "https://rsvp-pipeline.example/schemas/"


def message_schema(cls: MessageClass) -> JSONObject:
    """The JSON Schema of one message body, with ``$defs`` for nested models.

    Starts from pydantic's validation-mode schema and adds two facts of the
    wire format that pydantic cannot see from the class alone:

    * ``type`` is required: :func:`~shared.schemas.parse_message` picks the
      class by it, so a body without it is refused even though the class
      has a default.
    * ``schema_version`` has a maximum, ``LATEST_VERSION``: the envelope
      refuses newer versions in a validator.
    """
    schema = cls.model_json_schema(mode="validation")
    properties: JSONObject = schema["properties"]
    required = {"type", *schema.get("required", [])}
    schema["required"] = [name for name in properties if name in required]
    version = {**properties["schema_version"], "maximum": cls.LATEST_VERSION}
    properties["schema_version"] = dict(sorted(version.items()))
    return schema


def schema_id(type_: str) -> str:
    return f"{SCHEMA_ID_BASE}{type_}.schema.json"


def json_schema_document(cls: MessageClass) -> JSONObject:
    """The standalone JSON Schema file of one message type."""
    type_ = message_type(cls)
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(type_), **message_schema(cls)}
