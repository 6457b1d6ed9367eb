"""The cloud stub's half of OTA model updates: keys, signing, serving, publishing, status."""
