"""Routes of web-to-lead forms: the public endpoint and their management."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, Field

from leadflow.auth.deps import DB, Actor
from leadflow.config import get_settings
from leadflow.errors import InvalidInput, LeadflowError
from leadflow.leads import forms

public_router = APIRouter(tags=["web forms"])
router = APIRouter(prefix="/api/forms", tags=["web forms"])

_limiter = MovingWindowRateLimiter(MemoryStorage())


class FormIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    redirect_url: str = Field(..., max_length=1000, examples=["https://example.com/thank-you"])
    source: str | None = Field(None, max_length=100)
    campaign: str | None = Field(None, max_length=200)
    owner_id: int | None = None


class FormOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str
    redirect_url: str
    source: str | None
    campaign: str | None
    owner_id: int | None
    active: bool
    post_url: str = ""


@router.post("", response_model=FormOut, status_code=status.HTTP_201_CREATED)
def create_form(body: FormIn, db: DB, actor: Actor) -> FormOut:
    with db.transaction() as s:
        form = forms.create_form(s, actor, **body.model_dump())
        return FormOut.model_validate(form).model_copy(update={"post_url": f"/forms/{form.key}"})


@router.get("", response_model=list[FormOut])
def list_forms(db: DB, actor: Actor) -> list[FormOut]:
    with db.transaction() as s:
        return [
            FormOut.model_validate(f).model_copy(update={"post_url": f"/forms/{f.key}"})
            for f in forms.list_forms(s, actor)
        ]


async def read_public_fields(request: Request, *, repeated: bool = False) -> dict[str, Any]:
    """A public form's fields from a JSON object or an HTML form post (file uploads ignored).
    With ``repeated``, a name sent several times (a checkbox group) becomes a list of values."""

    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            payload = await request.json()
        except ValueError:
            raise InvalidInput(["body"], "is not valid JSON") from None
        if not isinstance(payload, dict):
            raise InvalidInput(["body"], "must be a JSON object of form fields")
        return payload
    form = await request.form()
    if not repeated:
        return {k: v for k, v in form.items() if isinstance(v, str)}
    fields: dict[str, Any] = {}
    for k, v in form.multi_items():
        if not isinstance(v, str):
            continue
        fields[k] = (
            [*fields[k], v] if isinstance(fields.get(k), list) else ([fields[k], v] if k in fields else v)
        )
    return fields


@public_router.post(
    "/forms/{form_key}",
    status_code=status.HTTP_303_SEE_OTHER,
    summary="Public web-to-lead endpoint (HTML form or JSON); answers 303 to the thank-you page",
    responses={
        303: {"description": "Redirect to the form's thank-you URL"},
        429: {"description": "Rate limited"},
    },
)
async def submit_form(form_key: str, request: Request, db: DB) -> Response:
    ip = request.client.host if request.client else "unknown"
    limit = parse(get_settings().form_rate_limit)
    if not _limiter.hit(limit, "form", ip):
        return JSONResponse(
            {"detail": "too many submissions from this address; try again later"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": "60"},
        )
    fields = await read_public_fields(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        with db.transaction() as s:
            result = forms.submit(s, form_key, fields, ip=ip)
    except LeadflowError:
        raise
    if wants_json:
        return JSONResponse(
            {"redirect_url": result.redirect_url, "lead_id": result.lead_id},
            status_code=status.HTTP_303_SEE_OTHER,
            headers={"Location": result.redirect_url},
        )
    return RedirectResponse(result.redirect_url, status_code=status.HTTP_303_SEE_OTHER)
