"""The typeclass of mygame's player characters."""

from evasync import DefaultCharacter


class Character(DefaultCharacter):
    """A player's character: the game's commands, and the server's look, say, who and quit."""

    default_cmdsets = ("mygame.commands:GameCmdSet",
                       "evasync.server.commands:CharacterCmdSet")
