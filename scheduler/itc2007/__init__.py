"""ITC-2007 track 3 (curriculum-based course timetabling, UD2): format, evaluator, solver."""
