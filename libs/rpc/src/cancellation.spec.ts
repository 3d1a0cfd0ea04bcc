import { Cancellation } from './cancellation';

describe('Cancellation', () => {
  it('runs each listener once, in order, and none removed or added after the abort', () => {
    const c = new Cancellation();
    const heard: string[] = [];
    const removed = () => heard.push('removed');
    c.addEventListener('abort', () => heard.push('first'));
    c.addEventListener('abort', removed);
    c.addEventListener('abort', () => heard.push('second'), { once: true });
    c.removeEventListener('abort', removed);
    expect(c.aborted).toBe(false);
    const why = new Error('why');
    c.abort(why);
    c.abort(new Error('again'));
    c.addEventListener('abort', () => heard.push('late'));
    expect(heard).toEqual(['first', 'second']);
    expect(c.aborted).toBe(true);
    expect(c.reason).toBe(why);
    expect(c.signal).toBe(c);
  });

  it('gives an AbortError as its reason when aborted without one, as an AbortController does', () => {
    const c = new Cancellation();
    c.abort();
    const controller = new AbortController();
    controller.abort();
    expect((c.reason as DOMException).name).toBe((controller.signal.reason as DOMException).name);
  });
});
