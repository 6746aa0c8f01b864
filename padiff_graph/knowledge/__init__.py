"""Equivalence knowledge as data: class families, tensor aliases, conversions.

The matcher and the weight copy hold no class-specific logic; they ask this
package, and users extend it (see ``conversions.register_conversion``).
"""
