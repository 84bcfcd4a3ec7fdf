"""Detection and automatic protection: the manual's chapter 1 causes, detected, and chapter 2's
"stop trading where needed", done in seconds and explained."""
