-- docker/shop.sql: the demo's `shop` database (docker/compose.yaml runs it once, when
-- PostgreSQL's volume is new). The producer's snapshot brings these rows to
-- Elasticsearch/OpenSearch and Redis within a minute of `up`; then change any row
-- (`docker compose exec postgres psql -U pgcdc shop`) and watch it follow.
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    email text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    sku text PRIMARY KEY,
    title text NOT NULL,
    price numeric(10,2) NOT NULL,
    tags text[]
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers,
    sku text NOT NULL REFERENCES products,
    qty int NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (id, name, email)
SELECT g, 'customer ' || g, 'customer' || g || '@example.com' FROM generate_series(1, 50) g;
INSERT INTO products (sku, title, price, tags)
SELECT 'SKU-' || g, 'product ' || g, (g * 1.25)::numeric(10,2), ARRAY['demo', 'batch' || g % 5]
FROM generate_series(1, 20) g;
INSERT INTO orders (id, customer_id, sku, qty)
SELECT g, 1 + g % 50, 'SKU-' || (1 + g % 20), 1 + g % 3 FROM generate_series(1, 200) g;
