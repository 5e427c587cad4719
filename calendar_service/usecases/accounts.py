"""Accounts: registering, and the caller's own row that most writes start from."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import AccountGone, EmailTaken, WrongCredentials
from calendar_service.security import hash_password, verify_password


async def account_of(uow: UnitOfWork, user_id: uuid.UUID) -> RowMapping:
    """The caller's user row; a valid token whose account is gone is refused."""
    user = await uow.users.by_id(user_id)
    if user is None:
        raise AccountGone()
    return user


async def register(
    uow: UnitOfWork, *, email: str, name: str, password: str, admin_emails: Collection[str]
) -> RowMapping:
    """A new user; an address listed in ``admin_emails`` gets the admin role (dev and test)."""
    email = email.lower()
    role = "admin" if email in admin_emails else "user"
    user = await uow.users.add(
        email=email, name=name, password_hash=await hash_password(password), role=role
    )
    if user is None:
        raise EmailTaken()
    await uow.commit()
    return user


async def sign_in(uow: UnitOfWork, *, email: str, password: str) -> RowMapping:
    """The user whose password this is; an unknown email costs the same hash as a known one."""
    email = email.strip().lower()
    # PostgreSQL refuses NUL in text: such an address cannot be anyone's
    user = None if "\x00" in email else await uow.users.by_email(email)
    known = await verify_password(user["password_hash"] if user else None, password)
    if not known or user is None:
        raise WrongCredentials()
    return user
