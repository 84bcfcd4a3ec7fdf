"""Corrections: erroneous trades found in the journal, busted or re-priced under a published
policy, or the venue rolled back to a point in time, each approved by a second operator."""
