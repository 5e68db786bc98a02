"""Spoken commands with intent and slot labels, and a keyword-spotting vocabulary.

Templates use `{slot}` placeholders filled from the value lists below; every expansion is a
transcript (lowercase words, numbers spelled out), so the same text serves ASR and intent.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

# Speech Commands' ten core words (Warden, 2018): short, confusable, classic for keyword spotting.
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")

SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "room": ("kitchen", "bedroom", "living room", "bathroom", "hallway", "office", "garage"),
    "genre": ("jazz", "rock", "classical", "country", "blues", "folk", "reggae"),
    "artist": ("the beatles", "miles davis", "bob marley", "johnny cash", "ella fitzgerald"),
    "time": ("six am", "seven thirty", "eight o'clock", "half past nine", "noon", "ten fifteen", "five forty five"),
    "city": ("london", "paris", "berlin", "tokyo", "chicago", "madrid", "boston", "dublin"),
    "day": ("today", "tomorrow", "this weekend", "on monday", "on friday", "tonight"),
    "duration": ("five minutes", "ten minutes", "half an hour", "one hour", "twenty seconds", "three minutes"),
    "person": ("mom", "dad", "alice", "john", "my sister", "the office", "grandma"),
    "degrees": ("sixty eight", "seventy", "twenty one", "nineteen", "seventy two"),
    "item": ("milk", "eggs", "bread", "coffee", "apples", "butter", "rice", "tomatoes"),
}

INTENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "lights_on": ("turn on the {room} lights", "switch on the light in the {room}", "lights on in the {room}"),
    "lights_off": ("turn off the {room} lights", "switch off the light in the {room}", "lights off in the {room}"),
    "play_music": ("play some {genre}", "play {genre} music", "put on something by {artist}", "play {artist}"),
    "stop_music": ("stop the music", "pause the music", "turn the music off", "stop playing"),
    "set_alarm": ("set an alarm for {time}", "wake me up at {time}", "alarm at {time} {day}"),
    "set_timer": ("set a timer for {duration}", "start a {duration} timer", "count down {duration}"),
    "weather": ("what's the weather in {city}", "will it rain in {city} {day}", "how hot is it in {city} {day}"),
    "volume_up": ("turn it up", "louder please", "increase the volume", "volume up"),
    "volume_down": ("turn it down", "quieter please", "lower the volume", "volume down"),
    "call": ("call {person}", "phone {person}", "ring {person} please", "give {person} a call"),
    "thermostat": ("set the heating to {degrees} degrees", "make it {degrees} degrees in the {room}"),
    "shopping_list": ("add {item} to my shopping list", "put {item} on the list", "we need {item}"),
    "what_time": ("what time is it", "tell me the time", "what's the time"),
}

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Command:
    text: str
    intent: str
    slots: tuple[tuple[str, str], ...]  # (slot name, value) in order of appearance

    def slots_json(self) -> str:
        return json.dumps([{"slot": name, "value": value} for name, value in self.slots])


def expand(template: str, intent: str) -> list[Command]:
    """Every filling of a template's slots, in a fixed order."""
    names = _SLOT.findall(template)
    fillings = itertools.product(*(SLOT_VALUES[name] for name in names))
    commands = []
    for values in fillings:
        slots = tuple(zip(names, values, strict=True))
        commands.append(Command(template.format(**dict(slots)), intent, slots))
    return commands


def all_commands() -> list[Command]:
    """All expansions of all templates, deduplicated by text (first intent wins), sorted by text."""
    commands: dict[str, Command] = {}
    for intent, templates in INTENT_TEMPLATES.items():
        for template in templates:
            for command in expand(template, intent):
                commands.setdefault(command.text, command)
    return sorted(commands.values(), key=lambda c: c.text)
