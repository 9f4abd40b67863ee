"""``POST /sms/status/{messageId}``: the SMS provider's delivery reports (Twilio's status callback).

Who may call it: the SMS provider alone, proven by ``X-Twilio-Signature`` over this URL and the
form (``cmc.outbox.status``), keyed by ``CMC_SMS_AUTH_TOKEN`` or the password of ``CMC_SMS_URL``.
A report without a valid signature is refused (403) before anything is read or written. When CMC
has no key to check one with it asked for no reports, and the endpoint answers 404.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from litestar import post
from litestar.params import FromPath

from cmc.api import HttpRequest
from cmc.api.services import Services
from cmc.errors import BadRequest, Forbidden, NotFound, UnsupportedMediaType, ValidationFailed
from cmc.outbox import queue, status

FORM = "application/x-www-form-urlencoded"


@post(f"{status.PATH}/{{message_id:str}}", status_code=204)
async def sms_status(request: HttpRequest, message_id: FromPath[str]) -> None:
    """Move the SMS to delivered or failed when the provider says so; 204 whatever it was."""
    services = Services.of(request)
    key = services.settings.sms_callback_key
    if key is None:
        raise NotFound("CMC asks for no SMS delivery reports (no SMS provider, or no key to check them).")
    given = request.headers.get(status.SIGNATURE_HEADER)
    if not given:
        raise Forbidden(f"A delivery report must be signed ({status.SIGNATURE_HEADER}).")
    params = _form(request.headers.get("content-type"), await request.body())
    url = status.callback_url(services.settings.base_url, message_id)
    if query := request.scope.get("query_string", b"").decode("latin-1"):
        url = f"{url}?{query}"
    if not status.verified(key, url, params, given):
        raise Forbidden(f"The {status.SIGNATURE_HEADER} of this delivery report does not match.")
    report = status.read(params)
    if isinstance(report, dict):
        raise ValidationFailed(errors=report)
    if await services.db.write(queue.report_delivery, message_id, report, now=services.clock()) is None:
        raise NotFound("CMC sent no such SMS.")


def _form(content_type: str | None, body: bytes) -> list[tuple[str, str]]:
    """The fields of a form body, in order; anything else is the caller's error."""
    if (content_type or "").split(";", 1)[0].strip().lower() != FORM:
        raise UnsupportedMediaType(f"Send the report as {FORM}.")
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except UnicodeDecodeError:
        raise BadRequest("The form is not valid UTF-8.") from None
    except ValueError:
        raise BadRequest("The form has too many fields.") from None


ROUTES = [sms_status]
