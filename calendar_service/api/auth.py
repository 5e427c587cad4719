"""Accounts and tokens: `POST /auth/register`, `POST /auth/token`.

Both are limited before any password is hashed (`REGISTER_LIMIT` per client
IP; `LOGIN_LIMIT` per account and per client IP), and fail closed with 503 when
Redis cannot count: these are the routes a credential-stuffing flood aims at.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import email_validator
from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, EmailStr, Field

from calendar_service.api.deps import ContainerDep, UowDep, admit_strictly, client_ip
from calendar_service.api.errors import refusals
from calendar_service.api.fields import PlainText
from calendar_service.errors import (
    EmailTaken,
    LimiterUnavailable,
    Overloaded,
    RateLimited,
    WrongCredentials,
)
from calendar_service.ratelimit import Counter
from calendar_service.usecases.accounts import register as register_account
from calendar_service.usecases.accounts import sign_in

router = APIRouter(prefix="/auth", tags=["auth"])


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


#: email-validator refuses special-use domains (RFC 6761: ``.test``, ``.local``, ...);
#: the document says so (JSON Schema patterns have no case-insensitive flag).
NOT_SPECIAL_USE_PATTERN = (
    r"^(?!.*[@.](?:"
    + "|".join(_any_case(name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    + r")\.?$)"
)


class Registration(BaseModel):
    email: EmailStr = Field(json_schema_extra={"pattern": NOT_SPECIAL_USE_PATTERN})
    password: str = Field(min_length=8, max_length=128)
    name: PlainText = Field(min_length=1, max_length=120)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    created_at: datetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret


#: Both routes are counted before any password is hashed, and fail closed.
LIMITED = (RateLimited, LimiterUnavailable, Overloaded)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=refusals(EmailTaken, *LIMITED),
)
async def register(
    body: Registration, request: Request, uow: UowDep, container: ContainerDep
) -> UserOut:
    limit = container.limits.register
    await admit_strictly(container, Counter(limit, "register", client_ip(request), "registered"))
    user = await register_account(
        uow,
        container.passwords,
        email=body.email,
        name=body.name,
        password=body.password,
        admin_emails=container.settings.admin_emails,
    )
    return UserOut.model_validate(dict(user))


@router.post("/token", response_model=Token, responses=refusals(WrongCredentials, *LIMITED))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    uow: UowDep,
    container: ContainerDep,
) -> Token:
    limit, account = container.limits.login, form.username.strip().lower()[:320]
    await admit_strictly(
        container,
        Counter(limit, "login-account", account, "signed in"),
        Counter(limit, "login-ip", client_ip(request), "signed in"),
    )
    user = await sign_in(uow, container.passwords, email=form.username, password=form.password)
    return Token(access_token=container.tokens.issue(user["id"], user["role"]))
