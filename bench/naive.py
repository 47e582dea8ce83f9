"""The naive receiver: how a tutorial would write it, to show what cdrhub's design buys.

FastAPI route with a pydantic model, SQLAlchemy ORM session, SQLite in WAL mode, one commit
per request and ``session.merge()`` as the upsert.

    NAIVE_DB=/tmp/naive.db BENCH_TOKEN=t uvicorn bench.naive:app --http httptools
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import BigInteger, Boolean, Float, Integer, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token")
engine = create_engine(f"sqlite:///{os.environ.get('NAIVE_DB', 'naive.db')}")


@event.listens_for(engine, "connect")
def _wal(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class Base(DeclarativeBase):
    pass


class Call(Base):
    __tablename__ = "calls"
    call_id: Mapped[str] = mapped_column(String, primary_key=True)
    agent_name: Mapped[str | None] = mapped_column(String)
    answered: Mapped[bool | None] = mapped_column(Boolean)
    direction: Mapped[int | None] = mapped_column(Integer)
    caller: Mapped[str | None] = mapped_column(String)
    callee: Mapped[str | None] = mapped_column(String)
    start_time: Mapped[int | None] = mapped_column(BigInteger)
    answer_time: Mapped[int | None] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    call_duration: Mapped[int | None] = mapped_column(Integer)
    intent: Mapped[str | None] = mapped_column(String)
    task_id: Mapped[str | None] = mapped_column(String)
    order_id: Mapped[str | None] = mapped_column(String)
    other: Mapped[str | None] = mapped_column(String)
    total_customer_price: Mapped[float | None] = mapped_column(Float)


Base.metadata.create_all(engine)


class Push(BaseModel):
    callId: str
    agentName: str | None = None
    answered: bool | None = None
    direction: int | None = None
    caller: str | None = None
    callee: str | None = None
    startTime: int | None = None
    answerTime: int | None = None
    endTime: int | None = None
    callDuration: int | None = None
    intent: str | None = None
    taskId: str | None = None
    orderId: str | None = None
    other: str | None = None
    totalCustomerPrice: float | None = None


app = FastAPI()


@app.post("/cc/callback")
def callback(push: Push, token: str = Header()) -> dict[str, bool]:
    if token != TOKEN:
        raise HTTPException(401)
    with Session(engine) as session:
        session.merge(
            Call(
                call_id=push.callId,
                agent_name=push.agentName,
                answered=push.answered,
                direction=push.direction,
                caller=push.caller,
                callee=push.callee,
                start_time=push.startTime,
                answer_time=push.answerTime,
                end_time=push.endTime,
                call_duration=push.callDuration,
                intent=push.intent,
                task_id=push.taskId,
                order_id=push.orderId,
                other=push.other,
                total_customer_price=push.totalCustomerPrice,
            )
        )
        session.commit()
    return {"ok": True}
