"""virtnetd: one long-lived process per host namespace that serves virtnet's API.

It keeps the datapath libraries loaded and their sockets open (the thin ``virtnet`` client
costs ~20 ms a command), is the single writer of state, streams events, starts autostart
networks and repairs drift. Modules: :mod:`.server` (socket, connections),
:mod:`.methods` (the JSON-RPC methods), :mod:`.events` (fan-out), :mod:`.monitor`
(autostart, drift repair, DHCP lease events), :mod:`.stdio` (per-client CLI output),
:mod:`.main` (the ``virtnetd`` command).
"""
