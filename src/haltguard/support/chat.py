"""Chat: a customer on the help pages talks to the desk over a WebSocket.

What the customer goes through: every question first gets the FAQ articles that match it
(``search``); asking for a person puts the chat in the queue, with its position told and
updated; an agent takes it (``POST /api/support/chats/{id}/take``) and they talk; when either
side ends it, or the customer goes away, the transcript becomes a ticket (channel ``chat``,
linked to the incident like any other).

The hub lives in the serving process (one queue per process; agents poll their chats over
the API, several at once). Its state is guarded by one lock, since agents' requests run on
worker threads and customers' sockets on the event loop; a message for a customer is handed
to their socket's loop with ``call_soon_threadsafe``. Bounded: at most
``support.chat_waiting_max`` chats wait, each message at most ``MESSAGE_CHARS_MAX``
characters, each chat at most ``MESSAGES_PER_CHAT_MAX`` messages. Messages are text: what
looks like HTML is kept as written and shown as text, never as markup.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from haltguard.common.clock import Clock
from haltguard.db.session import session_scope
from haltguard.support import search, service, texts
from haltguard.support.errors import ChatFullError, SupportConflictError, SupportError, not_found
from haltguard.support.models import AuthorKind, Channel
from haltguard.support.settings import SupportSettings

MESSAGE_CHARS_MAX = 2_000
MESSAGES_PER_CHAT_MAX = 500
CHATS_MAX = 20_000
SUGGESTIONS_MAX = 3


class ChatState:
    SUGGESTING = "suggesting"
    WAITING = "waiting"
    WITH_AGENT = "with_agent"
    CLOSED = "closed"


@dataclass
class ChatMessage:
    n: int
    author_kind: str
    author: str
    text: str
    at: datetime


@dataclass
class Chat:
    id: str
    customer_name: str
    customer_email: str
    language: str
    started_at: datetime
    deliver: Callable[[dict[str, Any]], None]
    state: str = ChatState.SUGGESTING
    agent: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)
    ticket_ref: str | None = None


def message_problem(text: str) -> str:
    """Why ``text`` is not a chat message ("" when it is)."""
    if not text.strip():
        return "empty"
    if len(text) > MESSAGE_CHARS_MAX:
        return f"longer than {MESSAGE_CHARS_MAX} characters"
    return ""


class ChatHub:
    """Every chat of this process and the queue for agents."""

    def __init__(self, session_factory: sessionmaker[Session], settings: SupportSettings,
                 clock: Clock) -> None:
        self._session_factory = session_factory
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._chats: dict[str, Chat] = {}
        self._waiting: deque[str] = deque()

    # --- the customer's side (called on the socket's loop) ---------------------------------

    def start(self, *, name: str, email: str, language: str,
              loop: asyncio.AbstractEventLoop, outbox: asyncio.Queue[dict[str, Any]]) -> Chat:
        def deliver(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(outbox.put_nowait, event)

        with self._lock:
            if len(self._chats) >= CHATS_MAX:
                raise ChatFullError("too many chats are open", message_ja=texts.CHAT_FULL["ja"],
                                    next_step="use the contact form")
            chat = Chat(id=secrets.token_urlsafe(12), customer_name=name[:200],
                        customer_email=email[:320], language=language,
                        started_at=self._clock.now(), deliver=deliver)
            self._chats[chat.id] = chat
        return chat

    def _add(self, chat: Chat, kind: str, author: str, text: str) -> ChatMessage:
        if len(chat.messages) >= MESSAGES_PER_CHAT_MAX:
            raise SupportConflictError(
                f"this chat has {MESSAGES_PER_CHAT_MAX} messages, the most one holds",
                message_ja="このチャットのメッセージ数が上限に達しました",
                next_step="end the chat (its transcript becomes a ticket) and start another")
        message = ChatMessage(len(chat.messages) + 1, kind, author, text, self._clock.now())
        chat.messages.append(message)
        return message

    def customer_says(self, chat_id: str, text: str) -> dict[str, Any]:
        """Record the customer's message; the answer is what their widget shows next."""
        problem = message_problem(text)
        if problem:
            raise SupportError(f"the message is {problem}",
                               message_ja="メッセージが空か、長すぎます",
                               next_step=f"send 1..{MESSAGE_CHARS_MAX} characters")
        with self._lock:
            chat = self._get(chat_id)
            if chat.state == ChatState.CLOSED:
                raise SupportConflictError("the chat has ended",
                                           message_ja="チャットは終了しました",
                                           next_step="start a new chat")
            self._add(chat, AuthorKind.CUSTOMER.value, chat.customer_name or "customer", text)
            state = chat.state
        if state != ChatState.SUGGESTING:
            return {"type": "received", "text": text}
        with session_scope(self._session_factory) as session:
            hits = search.search(session, text, language=chat.language, limit=SUGGESTIONS_MAX)
            articles = [{"slug": hit.article.slug,
                         "title": hit.article.title_ja if chat.language == "ja"
                         else hit.article.title_en,
                         "url": self._article_url(chat.language, hit.article.slug)}
                        for hit in hits]
        return {"type": "suggestions", "text": texts.CHAT_SUGGESTIONS[chat.language],
                "articles": articles}

    def _article_url(self, language: str, slug: str) -> str:
        base = self._settings.help_url + ("" if language == "ja" else "en/")
        return f"{base}articles/{slug}"

    def ask_for_agent(self, chat_id: str) -> dict[str, Any]:
        with self._lock:
            chat = self._get(chat_id)
            if chat.state == ChatState.SUGGESTING:
                if len(self._waiting) >= self._settings.chat_waiting_max:
                    raise ChatFullError(
                        f"{len(self._waiting)} chats are waiting, the most the desk queues",
                        message_ja=texts.CHAT_FULL["ja"],
                        next_step="use the contact form; we answer every ticket")
                chat.state = ChatState.WAITING
                self._waiting.append(chat.id)
            position = self._position(chat.id)
        return {"type": "queue", "position": position,
                "text": texts.CHAT_QUEUED[chat.language].format(position=position)}

    def _position(self, chat_id: str) -> int:
        try:
            return self._waiting.index(chat_id) + 1
        except ValueError:
            return 0

    def _tell_queue(self) -> None:
        for position, chat_id in enumerate(self._waiting, start=1):
            chat = self._chats[chat_id]
            chat.deliver({"type": "queue", "position": position,
                          "text": texts.CHAT_QUEUED[chat.language].format(position=position)})

    # --- the agents' side (worker threads) ----------------------------------------------

    def _get(self, chat_id: str) -> Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise not_found("chat", "チャット", chat_id, "GET /api/support/chats")
        return chat

    def list_chats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._summary(chat) for chat in self._chats.values()
                    if chat.state != ChatState.CLOSED]

    def _summary(self, chat: Chat) -> dict[str, Any]:
        return {"id": chat.id, "state": chat.state, "customer_name": chat.customer_name,
                "language": chat.language, "agent": chat.agent,
                "position": self._position(chat.id), "started_at": chat.started_at,
                "messages": len(chat.messages),
                "last": chat.messages[-1].text[:200] if chat.messages else ""}

    def take(self, chat_id: str, agent: str) -> dict[str, Any]:
        with self._lock:
            chat = self._get(chat_id)
            if chat.state == ChatState.CLOSED or (chat.agent and chat.agent != agent):
                raise SupportConflictError(
                    f"the chat is {'closed' if chat.state == ChatState.CLOSED else 'taken'}",
                    message_ja="このチャットは終了したか、他の担当者が対応中です",
                    next_step="take another chat from GET /api/support/chats")
            if chat.id in self._waiting:
                self._waiting.remove(chat.id)
            chat.state, chat.agent = ChatState.WITH_AGENT, agent
            chat.deliver({"type": "agent_joined", "agent": agent})
            self._tell_queue()
            return self._summary(chat)

    def agent_says(self, chat_id: str, agent: str, text: str) -> ChatMessage:
        problem = message_problem(text)
        if problem:
            raise SupportError(f"the message is {problem}",
                               message_ja="メッセージが空か、長すぎます",
                               next_step=f"send 1..{MESSAGE_CHARS_MAX} characters")
        with self._lock:
            chat = self._get(chat_id)
            if chat.state != ChatState.WITH_AGENT or chat.agent != agent:
                raise SupportConflictError(
                    "take the chat before writing in it",
                    message_ja="先にチャットを担当してください",
                    next_step=f"POST /api/support/chats/{chat_id}/take")
            message = self._add(chat, AuthorKind.AGENT.value, agent, text)
        chat.deliver({"type": "message", "from": "agent", "author": agent, "text": text})
        return message

    def messages(self, chat_id: str, after: int) -> list[ChatMessage]:
        with self._lock:
            return [message for message in self._get(chat_id).messages if message.n > after]

    # --- both ------------------------------------------------------------------------------

    def close(self, chat_id: str) -> str | None:
        """End the chat and keep its transcript as a ticket (its reference; None when the
        customer never wrote)."""
        with self._lock:
            chat = self._get(chat_id)
            if chat.state == ChatState.CLOSED:
                return chat.ticket_ref
            chat.state = ChatState.CLOSED
            if chat.id in self._waiting:
                self._waiting.remove(chat.id)
                self._tell_queue()
            transcript = list(chat.messages)
        ref = None
        if any(message.author_kind == AuthorKind.CUSTOMER.value for message in transcript):
            first = next(m for m in transcript if m.author_kind == AuthorKind.CUSTOMER.value)
            with session_scope(self._session_factory) as session:
                ticket, _ = service.create_ticket(session, service.NewTicket(
                    channel=Channel.CHAT, subject=first.text.splitlines()[0][:300],
                    body="\n".join(f"[{m.at:%H:%M:%S}] {m.author}: {m.text}"
                                   for m in transcript),
                    language=chat.language, customer_name=chat.customer_name,
                    customer_email=chat.customer_email, source_key=f"chat:{chat.id}",
                    transcript=[(m.author_kind, m.author, m.text) for m in transcript],
                ), settings=self._settings, now=self._clock.now())
                ref = ticket.ref
        with self._lock:
            chat.ticket_ref = ref
            self._chats.pop(chat.id, None)
        chat.deliver({"type": "closed", "ticket_ref": ref,
                      "text": texts.CHAT_CLOSED[chat.language].format(ticket_ref=ref or "-")})
        return ref
