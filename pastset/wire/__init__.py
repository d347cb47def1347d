"""The wire codec: what a PastSet value looks like in bytes.

Pyro5 carries our messages as opaque ``bytes`` (with its msgpack serializer, which
passes bytes through without copying them into text).  Inside those bytes we use
msgpack with extension types so that what arrives is what was sent: tuples stay
tuples (nested ones too), templates keep their Python type objects, sets, complex
numbers, big integers and NumPy arrays survive.  NumPy arrays travel as their raw
buffer (``tobytes``/``frombuffer``), never element by element.

:func:`encode_parts` / :func:`decode_parts` are the same codec with large arrays
and large ``bytes`` fields of tuples *out of band*: the message body refers to
them by number and their memory travels beside it, so a transport that can
send several buffers (the direct channel, :mod:`pastset.transport.channel`)
never copies a large value into the message nor out of it again.  The server
keeps such bytes in the memory they arrived in (:class:`HeldBytes`).

Nothing here ever unpickles: a type object is sent by name and looked up in a
fixed table, so bytes from the network can only ever produce plain data.
Anything the codec does not know is refused on the sending side with a
:class:`~pastset.errors.SerialisationError` that names the value's type.

Limits (checked on both sides, so a peer that skips the sending side's checks
gets the same refusal from the receiving side, and never a crashed process):

- :data:`MAX_DEPTH` levels of nesting.  msgpack decodes lists and dicts with
  a stack of its own, but every tuple, set or array is an extension whose
  payload is decoded by a call of its own: ``msgpack.unpackb`` keeps its
  decoding context (about 40 KiB) on the C stack, so some 25 nested tuples
  overflowed a 1 MiB thread stack.  Frames below the first few are decoded with
  a heap-allocated ``msgpack.Unpacker`` (about 1 KiB of C stack a level), the
  depth is counted as extensions open, and the total depth, lists and dicts
  included, is counted bottom-up as containers are built.
- Sets and dict keys whose hashes collide en masse (complex numbers and big
  integers can be chosen to) are refused: building them would take quadratic
  time.
- Integers of more than ``sys.get_int_max_str_digits()`` digits (4300 by default).
"""

from __future__ import annotations

from pastset.errors import SerialisationError
from pastset.wire.decoding import decode, decode_parts
from pastset.wire.encoding import encode, encode_parts
from pastset.wire.held import HeldBytes, released
from pastset.wire.kinds import MAX_COLLISIONS, MAX_DEPTH, OUT_OF_BAND, SUPPORTED

__all__ = [
    "MAX_COLLISIONS",
    "MAX_DEPTH",
    "OUT_OF_BAND",
    "SUPPORTED",
    "HeldBytes",
    "SerialisationError",
    "decode",
    "decode_parts",
    "encode",
    "encode_parts",
    "released",
]
