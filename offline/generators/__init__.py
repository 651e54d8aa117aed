"""Candidate generators of the offline tier: popularity, ALS, EASE, co-visitation, blends.

Import the implementations from their modules (``offline.generators.ease`` ...); this
package only re-exports the interface so that importing it loads no model library.
"""

from offline.generators.base import CandidateGenerator, ScoringGenerator, top_n
from offline.generators.matrix import IdIndex

__all__ = ["CandidateGenerator", "IdIndex", "ScoringGenerator", "top_n"]
