"""API errors as metav1.Status bodies, with upstream's reasons and message shapes."""

from __future__ import annotations


class StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _res(resource, group: str = "") -> str:
    plural = getattr(resource, "plural", resource)
    grp = getattr(resource, "group", group)
    return f"{plural}.{grp}" if grp else plural


def not_found(resource, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_res(resource)} "{name}" not found',
        {
            "name": name,
            "group": getattr(resource, "group", ""),
            "kind": getattr(resource, "plural", resource),
        },
    )


def already_exists(resource, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_res(resource)} "{name}" already exists',
        {
            "name": name,
            "group": getattr(resource, "group", ""),
            "kind": getattr(resource, "plural", resource),
        },
    )


def conflict(resource, name: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_res(resource)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and "
        "try again",
        {
            "name": name,
            "group": getattr(resource, "group", ""),
            "kind": getattr(resource, "plural", resource),
        },
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


# field.ErrorType strings of apimachinery pkg/util/validation/field/errors.go
CAUSE_TYPES = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Forbidden": "FieldValueForbidden",
    "Not found": "FieldValueNotFound",
}


def _cause(message: str) -> dict:
    """A field error "<field>: <Type>: <detail>" as a StatusCause (what kubectl prints)."""
    field, _, body = message.partition(": ")
    typ = next((t for prefix, t in CAUSE_TYPES.items() if body.startswith(prefix)), "")
    return {"reason": typ, "message": body, "field": field}


def invalid(resource, name: str, message: str | list[str]) -> StatusError:
    """apimachinery's NewInvalid: `<Kind>.<group> "<name>" is invalid: <errors>`, several
    errors as one aggregate `[a, b]`, each also a cause (kubectl prints the causes)."""
    kind = getattr(resource, "kind", str(resource))
    group = getattr(resource, "group", "")
    messages = [message] if isinstance(message, str) else list(message)
    text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{f"{kind}.{group}" if group else kind} "{name}" is invalid: {text}',
        {"name": name, "group": group, "kind": kind, "causes": [_cause(m) for m in messages]},
    )


def forbidden(
    user: str,
    verb: str,
    resource: str,
    group: str,
    namespace: str | None,
    name: str | None = None,
    sub: str | None = None,
) -> StatusError:
    what = f"{resource}/{sub}" if sub else resource
    res = f"{resource}.{group}" if group else resource
    named = f' "{name}"' if name else ""
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return StatusError(
        403,
        "Forbidden",
        f'{res}{named} is forbidden: User "{user}" cannot {verb} resource '
        f'"{what}" in API group "{group}"{scope}',
        {"name": name or "", "group": group, "kind": resource},
    )


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")
