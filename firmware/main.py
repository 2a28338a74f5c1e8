# Boot script of a PET participant board: the app first (it allocates its model while the
# heap is in one piece), then the participant, which joins the WiFi and runs for ever.
import app  # the app: train(params) -> (weights, scalar) or None, on_model(round_id, weights), MODEL
from upet.board import Board
from upet.store import Store

store = Store()
config = store.config()
board = Board(config.get("wifi"))
for key, value in (("max_message_size", board.max_message_size), ("table_rows", board.table_rows),
                   ("deep_sleep_s", board.deep_sleep_s)):
    if value and not config.get(key):  # the board's default, unless config.json says
        config[key] = value

import upet  # noqa: E402

try:  # the participant joins the WiFi itself, and again after every drop, with backoff
    participant = upet.Participant(config, train=app.train, on_model=app.on_model,
                                   model=getattr(app, "MODEL", None), store=store)
    config = None  # the participant keeps what it needs of it
    participant.run(board)
except Exception as e:  # a bug, or the heap ran out (a fresh heap after a reset may well do)
    import gc
    import sys
    sys.print_exception(e)
    if isinstance(e, MemoryError):
        gc.collect()
        print("upet: out of memory: %d bytes free, %d in use; the participant needs more heap"
              " (boards/README.md)" % (gc.mem_free(), gc.mem_alloc()))
    board.restart()  # on a board: a pause, then a reset, and the round resumes from flash
    sys.exit(1)
