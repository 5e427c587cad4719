"""Accounts and tokens: `POST /auth/register`, `POST /auth/token`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, EmailStr, Field

from calendar_service.api.deps import ContainerDep, UowDep
from calendar_service.api.fields import PlainText, has_nul
from calendar_service.security import verify_password
from calendar_service.usecases.accounts import register as register_account

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
    username = form.username.strip().lower()
    user = None if has_nul(username) else await uow.users.by_email(username)
    known = await verify_password(user["password_hash"] if user else None, form.password)
    if not known or user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="incorrect email or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Token(access_token=container.tokens.issue(user["id"], user["role"]))
