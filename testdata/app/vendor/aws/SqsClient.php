<?php

// A stand-in for the SQS client of aws/aws-sdk-php, which Debian does not
// package: Laravel's SqsConnector, SqsQueue and SqsJob need its class. It
// makes the calls they make (send, receive, delete, change visibility,
// attributes, purge) in SQS's JSON protocol, unsigned, to the endpoint the
// connection names: the tests' SQS server, which checks no signature. The
// fixture app pushes through it with Laravel's own SqsQueue, and
// `queue:work` runs on it with Laravel's own SqsJob.

namespace Aws\Sqs;

use Aws\Result;
use RuntimeException;

class SqsClient
{
    private $endpoint;
    private $region;

    public function __construct(array $args)
    {
        $this->endpoint = $args['endpoint'] ?? null;
        $this->region = $args['region'] ?? 'us-east-1';
        if ($this->endpoint === null) {
            throw new RuntimeException('the fixture SQS client needs the connection\'s endpoint');
        }
    }

    public function __call($name, array $arguments)
    {
        $body = json_encode((object) ($arguments[0] ?? []), JSON_UNESCAPED_SLASHES);
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'ignore_errors' => true,
            'timeout' => 30,
            'header' => implode("\r\n", [
                'Content-Type: application/x-amz-json-1.0',
                'X-Amz-Target: AmazonSQS.'.ucfirst($name),
                'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/'.$this->region.'/sqs/aws4_request, SignedHeaders=host, Signature=0',
            ]),
            'content' => $body,
        ]]);
        $reply = file_get_contents($this->endpoint, false, $context);
        $status = isset($http_response_header[0]) ? (int) explode(' ', $http_response_header[0])[1] : 0;
        if ($reply === false || $status !== 200) {
            throw new RuntimeException("SQS $name: HTTP $status: $reply");
        }

        return new Result(json_decode($reply, true) ?: []);
    }
}

namespace Aws;

class Result implements \ArrayAccess
{
    private $data;

    public function __construct(array $data)
    {
        $this->data = $data;
    }

    public function get($key)
    {
        return $this->data[$key] ?? null;
    }

    public function offsetExists($offset): bool
    {
        return isset($this->data[$offset]);
    }

    #[\ReturnTypeWillChange]
    public function offsetGet($offset)
    {
        return $this->data[$offset] ?? null;
    }

    public function offsetSet($offset, $value): void
    {
        $this->data[$offset] = $value;
    }

    public function offsetUnset($offset): void
    {
        unset($this->data[$offset]);
    }
}
