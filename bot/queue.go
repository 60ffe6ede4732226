package bot

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// workQueue runs the work that follows an ack on a fixed number of workers,
// from a bounded queue. The Socket Mode loop only books a place and hands
// the work over, so an ack never waits for the store or Slack, and a burst
// of commands becomes a queue, not thousands of goroutines contending for
// the store (SQLite lets one writer in at a time; the others spin in its
// busy handler, each on a connection and page cache of its own) and for
// the CPU the loop needs.
type workQueue struct {
	name    string
	workers int
	jobs    chan job
	// booked counts places taken by book and not yet handed to a worker:
	// at most cap(jobs), so push never blocks.
	booked atomic.Int64
	// closed: no more pushes (the loop has stopped).
	closed atomic.Bool
	done   sync.WaitGroup
	// kept are jobs a worker took as the bot stopped, for leftovers.
	mu   sync.Mutex
	kept []job
}

// job is one piece of work. run does it; drop, if set, is called instead
// when the bot stops before a worker got to it.
type job struct {
	run  func(ctx context.Context)
	drop func(ctx context.Context)
}

func newWorkQueue(name string, workers, capacity int) *workQueue {
	return &workQueue{name: name, workers: workers, jobs: make(chan job, capacity)}
}

// book takes a place in the queue; false when it is full.
func (q *workQueue) book() bool {
	for {
		n := q.booked.Load()
		if n >= int64(cap(q.jobs)) || q.closed.Load() {
			return false
		}
		if q.booked.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// push hands j over in the place book took. It never blocks.
func (q *workQueue) push(j job) { q.jobs <- j }

// start runs the workers under ctx, each job with a context of its own
// bounded by timeout.
func (q *workQueue) start(ctx context.Context, timeout time.Duration) {
	for range q.workers {
		q.done.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case j, ok := <-q.jobs:
					if !ok {
						return
					}
					q.booked.Add(-1)
					if ctx.Err() != nil {
						q.keep(j) // stopped meanwhile: for leftovers
						return
					}
					jctx, cancel := context.WithTimeout(ctx, timeout)
					j.run(jctx)
					cancel()
				}
			}
		})
	}
}

// close ends the intake: the workers finish what is queued and return.
// Call it once no more pushes can come (the loop has stopped).
func (q *workQueue) close() {
	if q.closed.CompareAndSwap(false, true) {
		close(q.jobs)
	}
}

// wait waits for the workers; they return when the queue is drained after
// close, or when their context is canceled.
func (q *workQueue) wait() { q.done.Wait() }

// leftovers hands the jobs no worker took, once the workers have returned,
// to drop (under ctx), and says how many there were.
func (q *workQueue) leftovers(ctx context.Context) int {
	q.mu.Lock()
	kept := q.kept
	q.kept = nil
	q.mu.Unlock()
	n := 0
	for _, j := range kept {
		n++
		if j.drop != nil {
			j.drop(ctx)
		}
	}
	for j := range q.jobs {
		n++
		if j.drop != nil {
			j.drop(ctx)
		}
	}
	return n
}

func (q *workQueue) keep(j job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.kept = append(q.kept, j)
}
