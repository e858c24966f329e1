"""driftgate's state as data: typed records in msgpack, versioned, read without running
code (no pickle). :mod:`.codec` writes and reads the records, :mod:`.registry` lists the
classes they may name, :mod:`.migrations` brings an older version's records up to date,
:mod:`.payload` puts the three together for ``streamer.checkpoint_format``."""
