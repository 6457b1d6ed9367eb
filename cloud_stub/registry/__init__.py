"""The device registry: one-time enrolment tokens, CSR signing, and deployment records."""
