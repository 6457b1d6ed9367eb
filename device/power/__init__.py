"""The power room: what the trap spends and when it may spend it.

- ``windows``: daily time windows (capture windows, sync windows, wake schedules);
- ``counters``: the agent's own energy counters (camera-on, radio-on, CPU by room, captures);
- battery gauges and low-battery shedding, the radio switch, wake alarms, the energy budget.

It sits just above the hardware in the data flow, so capture, vision, the store and the uplink
can all ask it; it imports none of them.
"""
