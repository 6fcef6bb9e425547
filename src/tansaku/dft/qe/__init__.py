"""Quantum ESPRESSO: input writing (pw.x, ph.x), output parsing (XML, dynamical matrices), error detection."""
