"""Accounts and tokens: `POST /auth/register`, `POST /auth/token`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, EmailStr, Field

from calendar_service.api.deps import ContainerDep, UowDep
from calendar_service.api.fields import PlainText
from calendar_service.usecases.accounts import register as register_account
from calendar_service.usecases.accounts import sign_in

router = APIRouter(prefix="/auth", tags=["auth"])


class Registration(BaseModel):
    email: EmailStr
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


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: Registration, uow: UowDep, container: ContainerDep) -> UserOut:
    user = await register_account(
        uow,
        email=body.email,
        name=body.name,
        password=body.password,
        admin_emails=container.settings.admin_emails,
    )
    return UserOut.model_validate(dict(user))


@router.post("/token", response_model=Token)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    uow: UowDep,
    container: ContainerDep,
) -> Token:
    user = await sign_in(uow, email=form.username, password=form.password)
    return Token(access_token=container.tokens.issue(user["id"], user["role"]))
