package vrrp

import (
	"context"
	"sync"
)

// fifo is an ordered job queue served by one goroutine (run). push never
// blocks, so Actions, which run under the Machine's lock, hand their slow
// work to a fifo: VIP changes and announcements, state-change callbacks,
// notify commands.
type fifo struct {
	wake chan struct{}

	mu     sync.Mutex
	jobs   []func(context.Context)
	closed bool
}

func newFIFO() *fifo { return &fifo{wake: make(chan struct{}, 1)} }

// push queues job and reports whether it was queued (false once closed).
func (q *fifo) push(job func(context.Context)) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.jobs = append(q.jobs, job)
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *fifo) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close makes run return once the queued jobs are done.
func (q *fifo) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// run executes jobs in order until the queue is closed and empty, or ctx
// ends (queued jobs are then abandoned).
func (q *fifo) run(ctx context.Context) {
	for {
		q.mu.Lock()
		if len(q.jobs) > 0 {
			job := q.jobs[0]
			q.jobs[0] = nil
			q.jobs = q.jobs[1:]
			q.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			job(ctx)
			continue
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return
		}
	}
}

// flush waits until every job queued before the call has run.
func (q *fifo) flush(ctx context.Context) error {
	done := make(chan struct{})
	if !q.push(func(context.Context) { close(done) }) {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
