"""The power room: what the trap spends and when it may spend it.

- ``counters``: the agent's own energy counters (camera-on, radio-on, CPU by room, captures);
- battery gauges and low-battery shedding, the radio switch, wake alarms, the energy budget.

Its daily windows (capture, sync, wake) are ``device.contracts.windows``, which the cloud
reads too. It sits just above the hardware in the data flow, so capture, vision, the store and the
uplink can all ask it; it imports none of them.
"""
