"""The typeclass of the players' characters on the demo server."""

from __future__ import annotations

from ..objects import DefaultCharacter


class Character(DefaultCharacter):
    """A player's character: every howto's commands plus the server's own (look, say, who...)."""

    default_cmdsets = ("howtos.command_duration:CommandDurationCmdSet",
                       "howtos.questions:QuestionsCmdSet",
                       "howtos.cooldown:CooldownCmdSet",
                       "howtos.offload:OffloadCmdSet",
                       "howtos.forge:AsyncForgeCmdSet",
                       "evasync.server.commands:CharacterCmdSet")
