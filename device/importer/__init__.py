"""Trail-camera import: photos from a card or folder enter the store like captures."""
