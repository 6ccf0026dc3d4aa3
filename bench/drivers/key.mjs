// The key of record `i` for the key-value peers: fixed width, so keys sort in append order.
export const key = (i) => i.toString(16).padStart(12, '0')
