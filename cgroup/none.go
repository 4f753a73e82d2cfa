package cgroup

// None runs isolated jobs without limits.
type None struct{}

func (None) Name() string                                { return "none" }
func (None) Create(name string, _ Limits) (Group, error) { return noneGroup(name), nil }
func (None) Close() error                                { return nil }

type noneGroup string

func (g noneGroup) Path() string        { return "(none) " + string(g) }
func (noneGroup) Add(int) error         { return nil }
func (noneGroup) Kill() error           { return nil }
func (noneGroup) Stats() (Stats, error) { return Stats{}, nil }
func (noneGroup) Delete() error         { return nil }
